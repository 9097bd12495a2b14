/*
 * stepstream.js: follow one execution's progress from any page. No dependencies.
 *
 *   <script src="<server>/static/stepstream.js"></script>
 *   stepstream.follow(serverUrl, executionId, {onProgress, onDone, onError, token})
 *
 * It reads the execution's WebSocket stream and, when the connection drops (a network
 * blip, a server restart), reconnects with backoff and resumes after the last event it
 * saw (`?after=SEQ`): no event is delivered twice and none is missed. docs/dashboard.md
 * has a copy-paste example.
 */
(function (root) {
  "use strict";

  var TERMINAL = { completed: true, failed: true, cancelled: true };
  // Close codes after which trying again cannot help.
  var FATAL = {
    4400: "the server refused the request",
    4401: "missing or invalid token",
    4403: "the server does not accept this page's origin (start it with --allow-origin)",
    4404: "unknown execution",
  };

  function streamUrl(serverUrl, executionId, after, token) {
    var base = new URL(serverUrl || "/", root.location ? root.location.href : undefined);
    if (base.pathname.slice(-1) !== "/") base.pathname += "/";
    var url = new URL(
      "api/v1/executions/" + encodeURIComponent(executionId) + "/progress/ws",
      base
    );
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (after > 0) url.searchParams.set("after", String(after));
    if (token) url.searchParams.set("token", token);
    return url.href;
  }

  /**
   * Follow `executionId` on the server at `serverUrl`: its scheme and host (plus a path
   * prefix behind a proxy), or empty for the page's own origin. Options, all optional:
   *   onProgress(progress, message)  every progress snapshot: percentage, current_step_name, ...
   *   onDone(message)                once, with the terminal message: message.type is
   *                                  "completed" (message.outputs), "failed" (message.error)
   *                                  or "cancelled"
   *   onError(error)                 once, when following cannot go on: error.code is the
   *                                  close code (4401 bad token, 4403 origin not allowed,
   *                                  4404 unknown execution)
   *   onMessage(message)             every message, in order, none twice
   *   onConnection(state, info)      "open", or "retrying" with info.delay in ms
   *   token                          the server's token (a string, or a function returning one)
   *   after                          resume after this seq (0: from the start)
   *   maxDelay                       longest pause between reconnections, ms (default 5000)
   * Returns {close(), lastSeq()}.
   */
  function follow(serverUrl, executionId, options) {
    var opts = options || {};
    var lastSeq = opts.after || 0;
    var maxDelay = opts.maxDelay || 5000;
    var attempt = 0;
    var finished = false;
    var socket = null;
    var timer = null;
    var lastError = "";

    function call(name, a, b) {
      var callback = opts[name];
      if (typeof callback !== "function") return;
      try {
        callback(a, b);
      } catch (error) {
        // A bug in a callback must not stop the stream; report it where it belongs.
        setTimeout(function () {
          throw error;
        });
      }
    }

    function token() {
      return typeof opts.token === "function" ? opts.token() : opts.token;
    }

    function stop() {
      finished = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (socket !== null) socket.close(1000);
      socket = null;
    }

    function receive(event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      attempt = 0;
      if (message.type === "error") {
        lastError = message.message || "";
        return;
      }
      if (typeof message.seq === "number") {
        if (message.seq <= lastSeq) return; // already seen before a reconnection
        lastSeq = message.seq;
      }
      call("onMessage", message);
      if (message.progress) call("onProgress", message.progress, message);
      if (TERMINAL[message.type]) {
        finished = true;
        call("onDone", message);
      }
    }

    function closed(ws, event) {
      if (socket !== ws) return;
      socket = null;
      if (finished) return;
      if (FATAL[event.code]) {
        finished = true;
        call("onError", {
          code: event.code,
          message: lastError || event.reason || FATAL[event.code],
        });
        return;
      }
      var delay = Math.min(maxDelay, 500 * Math.pow(2, attempt));
      delay = Math.round(delay * (0.75 + Math.random() * 0.5)); // spread a crowd's retries
      attempt += 1;
      call("onConnection", "retrying", { delay: delay, code: event.code });
      timer = setTimeout(connect, delay);
    }

    function connect() {
      timer = null;
      lastError = "";
      var ws = new WebSocket(streamUrl(serverUrl, executionId, lastSeq, token()));
      socket = ws;
      ws.onopen = function () {
        if (socket === ws) call("onConnection", "open", { after: lastSeq });
      };
      ws.onmessage = function (event) {
        if (socket === ws) receive(event);
      };
      ws.onclose = function (event) {
        closed(ws, event);
      };
    }

    connect();
    return {
      close: stop,
      lastSeq: function () {
        return lastSeq;
      },
    };
  }

  root.stepstream = { follow: follow };
})(typeof window !== "undefined" ? window : globalThis);
