"""The names this terminal learnt of the parties it deals with: other terminals' labels and
merchants' names, as the payment server told them. The server tells only a party
(``GET /v1/terminals/{id}/profile``, ``/v1/merchants/{id}/profile``; see
``nfcpay/server/services/profiles.py``), so a target learns a merchant's name once it has
paid there, and its grants' owners' labels once it holds their grants.

Kept in the home as ``names/<party id>.json`` (``{"party_id", "name"}``): a name never
changes once registered, so each is asked for once. A party the server will not name (not a
party yet, or the server out of reach) stays unnamed and is shown by its id. Names are
chosen by their owners: they are always shown with the id beside (:func:`nfcpay.names.labelled`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError
from nfcpay.names import labelled
from nfcpay.terminals.shelf import Shelf

Json = dict[str, Any]


@dataclass(frozen=True)
class Party:
    """A terminal (``t_…``) or merchant (``m_…``) and the name the server knows it by."""

    party_id: str
    name: str

    def to_json(self) -> Json:
        return asdict(self)


class Parties(Shelf[Party]):
    """The names learnt: ``names/<party id>.json``."""

    kind = "names"
    id_field = "party_id"

    def parse(self, data: Json) -> Party:
        return Party(str(data["party_id"]), str(data["name"]))

    def known(self) -> dict[str, str]:
        """Every name learnt, by party id."""
        return {party.party_id: party.name for party in self.each()}

    def name_of(self, party_id: str) -> str | None:
        """The name learnt for ``party_id`` (its one file, not the whole shelf), or None."""
        if not self.home.has(self.kind, party_id):
            return None
        return self.get(party_id).name

    def keep(self, party_id: str, name: str | None) -> None:
        """Remember ``name`` for ``party_id`` (as an answer of the server's gave it); a name
        already kept is not written again."""
        if name and self.name_of(party_id) != name:
            self.put(Party(party_id, name))

    def learn(self, client: PaymentClient, party_ids: Iterable[str]) -> dict[str, str]:
        """Ask the server for the names not known yet of ``party_ids``; every name known."""
        known = self.known()
        for party_id in dict.fromkeys(party_ids):
            if party_id in known:
                continue
            try:
                profile = (
                    client.merchant_profile(party_id)
                    if party_id.startswith("m_")
                    else client.terminal_profile(party_id)
                )
            except ApiError:
                continue  # not a party (yet), or no server: shown by its id
            name = profile.get("merchant_name") or profile["label"]
            self.keep(party_id, name)
            known[party_id] = name
        return known

    def labelled(self, party_id: str) -> str:
        """``party_id`` as people read it: its learnt name with the short id, else the id."""
        return labelled(self.name_of(party_id), party_id)
