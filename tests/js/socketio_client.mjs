// Drives the official socket.io-client against burnbox for tests/realtime.rs.
// Settings come from the environment; everything that happens is printed as one JSON
// object per line on stdout, which the Rust test reads.
//
//   BURNBOX_URL     http://127.0.0.1:port
//   BURNBOX_TOKEN   access token sent as the handshake `auth.token` (empty: none)
//   NUMBERS         comma-separated number ids to subscribe to
//   AFTER           resume point (optional)
//   COUNT           exit after this many `message` events (0: right after the ack)
//   TRANSPORTS      e.g. "websocket" or "polling" (default: polling, then upgrade)
//   UNSUBSCRIBE     "1": right behind the subscribe, without waiting for its ack, send
//                   a malformed subscribe (its ack is reported as `refused`) and an
//                   unsubscribe from NUMBERS; exit on the unsubscribe ack
import { io } from "socket.io-client";

const env = process.env;
const print = (object) => process.stdout.write(JSON.stringify(object) + "\n");
const count = Number(env.COUNT ?? "1");
const numbers = (env.NUMBERS ?? "").split(",").filter((n) => n !== "").map(Number);
const after = env.AFTER ? Number(env.AFTER) : undefined;
let received = 0;

const socket = io(env.BURNBOX_URL, {
  auth: env.BURNBOX_TOKEN ? { token: env.BURNBOX_TOKEN } : {},
  transports: env.TRANSPORTS ? env.TRANSPORTS.split(",") : ["polling", "websocket"],
  reconnection: false,
});

const finish = (code) => {
  socket.close();
  process.exit(code);
};
setTimeout(() => {
  print({ event: "timeout" });
  finish(2);
}, 20000);

socket.on("connect_error", (error) => {
  print({ event: "connect_error", message: error.message });
  finish(0);
});
socket.on("message", (event) => {
  print({ event: "message", data: event });
  received += 1;
  if (received === count) finish(0);
});
socket.on("resume", (data) => print({ event: "resume", data }));
socket.on("closed", (data) => print({ event: "closed", data }));
socket.on("disconnect", (reason) => {
  print({ event: "disconnect", reason });
  // The server ended the connection: nothing more can come.
  if (reason === "io server disconnect") finish(0);
});
socket.on("connect", () => {
  print({ event: "connect", transport: socket.io.engine.transport.name });
  // A callback, not `await emitWithAck`: the ack and the replayed messages after it can
  // come in one polling payload, and an awaited ack would be printed after them.
  const unsubscribing = env.UNSUBSCRIBE === "1";
  socket.emit("subscribe", { numbers, after }, (ack) => {
    print({ event: "ack", data: ack });
    if (!unsubscribing && (!ack.ok || count === 0)) finish(0);
  });
  if (unsubscribing) {
    socket.emit("subscribe", { numbers: "none" }, (ack) => print({ event: "refused", data: ack }));
    socket.emit("unsubscribe", { numbers }, (ack) => {
      print({ event: "unsubscribed", data: ack });
      finish(0);
    });
  }
});
