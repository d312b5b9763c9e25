"""HubSpot CRM v3: list pagination for full loads, search on the modification date for increments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from healthscore.sources.base import (
    BearerAuth,
    Page,
    Source,
    SourceConnection,
    SourceObject,
    parse_timestamp,
    source_objects,
)

SEARCH_CAP = 10_000
SEARCH_PAGE = 200
LIST_PAGE = 100

PROPERTIES = {
    "companies": ["name", "domain", "industry", "numberofemployees", "hubspot_owner_id", "lifecyclestage",
                  "customer_segment", "plan_tier", "customer_status", "licensed_seats", "arr",
                  "contract_renewal_date", "customer_since", "twitterfollowers", "zendesk_organization_id",
                  "stripe_customer_id", "createdate", "hs_lastmodifieddate"],
    "contacts": ["firstname", "lastname", "email", "jobtitle", "department", "customer_role", "left_company",
                 "associatedcompanyid", "createdate", "lastmodifieddate"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "dealtype", "deal_category", "closedate", "createdate",
              "hs_lastmodifieddate"],
    "meetings": ["hs_timestamp", "hs_meeting_title", "hs_activity_type", "hs_meeting_outcome", "hubspot_owner_id",
                 "hs_lastmodifieddate"],
}
MODIFIED_PROPERTY = {"contacts": "lastmodifieddate"}


class HubSpotSource(Source):
    name = "hubspot"
    objects: ClassVar[dict[str, SourceObject]] = source_objects("hubspot")

    @staticmethod
    def auth(connection: SourceConnection) -> BearerAuth:
        return BearerAuth(connection.password)

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Cursor = the newest modification time seen, in epoch ms. None, or a snapshot object: a full list.

        HubSpot search answers carry no associations, and deals/meetings name their company only through
        one: as snapshots (registry) they are listed in full (contacts have associatedcompanyid)."""
        if obj == "owners":
            yield from self._list("/crm/v3/owners", {"limit": LIST_PAGE})
        elif cursor is None or self.mode(obj) == "snapshot":
            params = {"limit": LIST_PAGE, "properties": ",".join(PROPERTIES[obj])}
            if obj != "companies":
                params["associations"] = "companies"
            yield from self._list(f"/crm/v3/objects/{obj}", params, track=obj)
        else:
            yield from self._search(obj, int(cursor))

    def _list(self, path: str, params: dict, track: str | None = None) -> Iterator[Page]:
        newest = None
        while True:
            body = self.client.get_json(path, params=params)
            records = body.get("results", [])
            if track:
                newest = max([newest or 0, *(self._modified_ms(track, r) for r in records)])
            after = (body.get("paging") or {}).get("next", {}).get("after")
            yield Page(records, str(newest) if newest else None)
            if not after:
                return
            params = {**params, "after": after}

    def _modified_ms(self, obj: str, record: dict) -> int:
        stamp = parse_timestamp(record["properties"].get(MODIFIED_PROPERTY.get(obj, "hs_lastmodifieddate")))
        return int(stamp.timestamp() * 1000) if stamp else 0

    def _search(self, obj: str, since_ms: int) -> Iterator[Page]:
        """Ascending by modification time; before the 10,000-result cap, restart from the last value."""
        prop = MODIFIED_PROPERTY.get(obj, "hs_lastmodifieddate")
        seen_at_boundary: set[str] = set()
        while True:
            offset, last_ms, restarted = 0, since_ms, False
            while True:
                body = self.client.post_json(f"/crm/v3/objects/{obj}/search", idempotent=True, body={
                    "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(since_ms)}]}],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": PROPERTIES[obj], "limit": SEARCH_PAGE, **({"after": str(offset)} if offset else {}),
                })
                records = [r for r in body.get("results", []) if r["id"] not in seen_at_boundary]
                for record in records:
                    modified = self._modified_ms(obj, record)
                    if modified > last_ms:
                        last_ms, seen_at_boundary = modified, set()
                    seen_at_boundary.add(record["id"])
                yield Page(records, str(last_ms))
                after = (body.get("paging") or {}).get("next", {}).get("after")
                if not after:
                    return
                offset = int(after)
                if offset + SEARCH_PAGE > SEARCH_CAP:
                    restarted = True
                    break
            if restarted:
                if last_ms == since_ms:
                    raise RuntimeError(f"more than {SEARCH_CAP} {obj} share modification time {since_ms}")
                since_ms = last_ms
