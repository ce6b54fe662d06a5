"""Sparkplug B 3.0 for the gateway: the edge node's topics, metrics and payloads.

One module per job, pure (no I/O, no clock, no counters: the session owns those):

- ``topics``: ``spBv1.0/...`` topics built and parsed.
- ``datatypes``: a tag's Sparkplug type and where its value travels in the payload.
- ``metrics``: a metric per tag (name, alias, type, units), per source.
- ``tagmap``: the metrics the tag map declares before any reading.
- ``payloads``: NBIRTH, NDEATH, DBIRTH, DDATA, DDEATH.
- ``decode``: payloads to plain dicts; NCMD, DCMD and STATE parsed.
- ``describe``: ``plantgate tail``'s lines for Sparkplug messages.
- ``wire``: the protobuf wire format our builders write; ``sparkplug_b.proto`` the schema.
"""
