"""Everything that talks to a provd server and never runs one: the Connect and
WebSocket clients, the admin commands and the reference provisioner daemon.

Nothing under `provd.client` imports the server's modules (store, scheduler,
dispatch, rpc, hypercorn, sqlite_utils); tests/test_import_boundary.py holds it to
that. What both sides share lives in neutral modules: `provd.protocol` (header
names, limits, error codes, the WebSocket envelope), `provd.model`, `provd.archive`,
`provd.secrets` and the generated `provd.gen`.
"""
