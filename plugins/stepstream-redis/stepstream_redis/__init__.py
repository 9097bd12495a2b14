"""stepstream-redis: an execution's events on Redis Streams, read by servers in consumer groups.

The transport is `stepstream_redis.transport.RedisTransport`, found through the entry
point (`stepstream_redis.plugin`) by the `redis://` and `rediss://` URL schemes.
"""
