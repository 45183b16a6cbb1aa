"""What tests and benchmarks share: real server processes and in-process servers
(:mod:`.server`), payment scenes, means signed the way terminals sign them, and the query
plans of the approval path (:mod:`.query_plans`).

Shipped with the package so that ``scripts/`` and ``tests/`` import one copy; nothing in
the rest of ``nfcpay`` imports it.
"""
