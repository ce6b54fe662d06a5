"""Modbus TCP: config, register codec, request planning and the pymodbus connector."""
