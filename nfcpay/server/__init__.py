"""The nfcpay payment server: HTTP API (:mod:`.app`, :mod:`.routes`), services cut by domain
(:mod:`.services`), storage on SQLite or PostgreSQL (:mod:`.store`) and the double-entry
:mod:`.ledger`. It imports nothing from ``cli``, ``terminals`` or ``transport``.

Nothing is imported here: the CLI imports ``nfcpay.server.settings`` to describe ``nfcpay
server`` (``nfcpay --help`` lists it), and that must not pull in FastAPI. Build the app with
:func:`nfcpay.server.app.create_app`."""
