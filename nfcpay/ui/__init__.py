"""``nfcpay ui``: local web pages served by the terminal itself, acting with its own key.

One process serves one terminal's page on 127.0.0.1 only: the owner page for a user
terminal (:mod:`.owner`), the counter page for a merchant (:mod:`.counter`), the wallet page
for a target (:mod:`.wallet`). There is no login on the payment server: the page signs with
the terminal's key like the CLI does, and only the person holding the printed link (a
random token, then an HttpOnly cookie) can drive it; other sites cannot (:mod:`.guard`).
Pages are server-rendered; their live parts arrive as re-rendered HTML over server-sent
events (:mod:`.live`, ``static/ui.js``): no build step and nothing loaded from elsewhere.
"""
