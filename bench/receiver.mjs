// A fast local webhook receiver for the engine benchmark: answers 204 at once and keeps, per
// event, its type and when it arrived (ms). On SIGTERM it writes them as JSON lines to the
// file named by its first argument. Listens on the port of its second argument.
import http from "node:http";
import fs from "node:fs";

const [out, port] = process.argv.slice(2);
const seen = [];
http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const at = Date.now();
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        seen.push([body.eventId ?? req.headers["x-event-id"], body.type, at, body.payload?.accountId ?? null]);
      } catch {
        seen.push([req.headers["x-event-id"], null, at, null]);
      }
      res.writeHead(204).end();
    });
  })
  .listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => {
  fs.writeFileSync(out, seen.map((s) => JSON.stringify(s)).join("\n"));
  process.exit(0);
});
