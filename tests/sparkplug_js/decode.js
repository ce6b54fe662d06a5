// Decodes Sparkplug B payloads with Eclipse Tahu's JavaScript codec (sparkplug-payload, the
// version pinned in package-lock.json): an implementation independent of plantgate's.
//
// stdin: one payload per line, base64, each line ended by a newline. stdout: one JSON object per line, in the same order:
//   {"tahu": <sparkplug-payload's decodePayload()>, "raw": <the protobuf message's fields>}
// or {"error": "<message>"} when the payload cannot be decoded. JSON has no 64-bit integers,
// bytes or NaN, so those are written {"$long": "<decimal>"}, {"$bytes": "<base64>"} and
// {"$float": "NaN" | "Infinity" | "-Infinity"}.
"use strict";

const fs = require("fs");
const Long = require("long");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const Payload = require("sparkplug-payload/lib/sparkplugPayloadProto").org.eclipse.tahu.protobuf.Payload;

function plain(value) {
  if (Long.isLong(value)) return { $long: value.toString() };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString("base64") };
  if (typeof value === "number" && !Number.isFinite(value)) return { $float: String(value) };
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value)) {  // own keys: the fields the message carries
      if (value[key] !== undefined) out[key] = plain(value[key]);
    }
    return out;
  }
  return value;
}

const lines = fs.readFileSync(0, "utf8").split("\n");
lines.pop(); // every payload's line ends with a newline; an empty line is an empty payload
const out = lines.map((line) => {
  try {
    const bytes = Buffer.from(line, "base64");
    return JSON.stringify({ tahu: plain(sparkplug.decodePayload(bytes)), raw: plain(Payload.decode(bytes)) });
  } catch (err) {
    return JSON.stringify({ error: String(err && err.message ? err.message : err) });
  }
});
process.stdout.write(out.map((line) => line + "\n").join(""));
