"""stepstream-mqtt: an execution's events and its retained status on an MQTT broker.

The transport is `stepstream_mqtt.transport.MqttTransport`, found through the entry
point (`stepstream_mqtt.plugin`) by the `mqtt://` and `mqtts://` URL schemes.
"""
