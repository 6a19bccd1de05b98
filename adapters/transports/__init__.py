"""Transports: how an adapter meets an agency system (a folder, HTTP), each way."""
