"""Allen-Bradley Logix (EtherNet/IP CIP): config, address parsing, tag resolution, the connector."""
