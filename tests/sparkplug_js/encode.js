// Encodes Sparkplug B payloads with Eclipse Tahu's JavaScript codec, as a host application
// using it would (our tests send these to our NCMD/DCMD parsers).
//
// stdin: one JSON payload per line, in sparkplug-payload's form
//   {"timestamp": 1, "metrics": [{"name": "...", "alias": 5, "type": "Int16", "value": -2}]}
// stdout: one line per payload, the encoded bytes in base64.
"use strict";

const fs = require("fs");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const lines = fs.readFileSync(0, "utf8").split("\n");
lines.pop(); // every payload's line ends with a newline
const out = lines.map((line) => Buffer.from(sparkplug.encodePayload(JSON.parse(line))).toString("base64"));
process.stdout.write(out.map((line) => line + "\n").join(""));
