"""HubSpot CRM v3: list pagination for full loads, search on the modification date for increments.

Deals and meetings name their company only through an association, and search answers carry none, so
an increment pairs each search page with one v4 associations batch read per 100 ids. Records deleted
in the CRM (archived) vanish from search, so each increment also lists the archived records and lands
those archived since the cursor as tombstones (``"archived": true``): point-in-time reads drop a
record whose newest version is one, which is what the full snapshots used to say by leaving it out.
"""

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
#: Objects whose company comes from an association (search answers carry none): an increment reads it
#: from the v4 associations batch read and lands deletions as tombstones.
ASSOCIATED_OBJECTS = frozenset({"deals", "meetings"})
ASSOCIATION_BATCH = 100


class HubSpotSource(Source):
    name = "hubspot"
    objects: ClassVar[dict[str, SourceObject]] = source_objects("hubspot")

    @staticmethod
    def auth(connection: SourceConnection) -> BearerAuth:
        return BearerAuth(connection.password)

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        """Cursor = the newest modification time seen, in epoch ms. None, or a snapshot object: a full list
        (with company associations). Otherwise a search from the cursor; deals and meetings add their
        associations (v4 batch read) and the records archived since the cursor (tombstones)."""
        if obj == "owners":
            yield from self._list("/crm/v3/owners", {"limit": LIST_PAGE})
        elif cursor is None or self.mode(obj) == "snapshot":
            params = {"limit": LIST_PAGE, "properties": ",".join(PROPERTIES[obj])}
            if obj != "companies":
                params["associations"] = "companies"
            yield from self._list(f"/crm/v3/objects/{obj}", params, track=obj)
        else:
            yield from self.window_pages(obj, int(cursor), None, tombstones_since=int(cursor))

    def window_pages(self, obj: str, since_ms: int, until_ms: int | None = None, *,
                     tombstones_since: int | None = None) -> Iterator[Page]:
        """The increment of ``obj`` modified in [since_ms, until_ms) (None: no upper bound), as ``pages`` gives
        it; an extraction part (``pipeline.extract_parts``) pulls one such window. Deals and meetings add their
        associations, and with ``tombstones_since`` the records archived since then (one window of a split
        carries them). A page's cursor is the newest modification time seen so far, None before the first record."""
        for page in self._search(obj, since_ms, until_ms):
            if obj in ASSOCIATED_OBJECTS:
                self._attach_companies(obj, page.records)
            yield page
        if obj in ASSOCIATED_OBJECTS and tombstones_since is not None:
            yield from self._archived_since(obj, tombstones_since)

    def _attach_companies(self, obj: str, records: list[dict]) -> None:
        """Give search results the association block the list endpoint has, from the v4 batch read.

        An id the read cannot answer (deleted meanwhile) keeps no association, as the list would show it;
        its tombstone comes with a later increment."""
        kind = f"{obj[:-1]}_to_company"
        for start in range(0, len(records), ASSOCIATION_BATCH):
            chunk = records[start : start + ASSOCIATION_BATCH]
            body = self.client.post_json(f"/crm/v4/associations/{obj}/companies/batch/read",
                                         {"inputs": [{"id": r["id"]} for r in chunk]}, idempotent=True)
            found = {str(r["from"]["id"]): sorted(str(t["toObjectId"]) for t in r.get("to") or [])
                     for r in body.get("results") or []}
            for record in chunk:
                companies = found.get(str(record["id"]))
                if companies:
                    record["associations"] = {"companies": {"results": [{"id": c, "type": kind} for c in companies]}}

    def _archived_since(self, obj: str, since_ms: int) -> Iterator[Page]:
        """Records archived at or after ``since_ms``, as tombstones; the cursor stays the search's."""
        params = {"limit": LIST_PAGE, "archived": "true", "properties": "hs_lastmodifieddate"}
        for page in self._list(f"/crm/v3/objects/{obj}", params):
            gone = []
            for record in page.records:
                stamp = parse_timestamp(record.get("archivedAt"))
                if stamp is None or stamp.timestamp() * 1000 >= since_ms:
                    gone.append(record)
            yield Page(gone, None)

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

    def _search(self, obj: str, since_ms: int, until_ms: int | None = None) -> Iterator[Page]:
        """Ascending by modification time, from ``since_ms`` (and before ``until_ms``); before the 10,000-result
        cap, restart from the last value."""
        prop = MODIFIED_PROPERTY.get(obj, "hs_lastmodifieddate")
        seen_at_boundary: set[str] = set()
        seen_any = False
        before = [{"propertyName": prop, "operator": "LT", "value": str(until_ms)}] if until_ms is not None else []
        while True:
            offset, last_ms, restarted = 0, since_ms, False
            while True:
                body = self.client.post_json(f"/crm/v3/objects/{obj}/search", idempotent=True, body={
                    "filterGroups": [{"filters": [
                        {"propertyName": prop, "operator": "GTE", "value": str(since_ms)}, *before]}],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": PROPERTIES[obj], "limit": SEARCH_PAGE, **({"after": str(offset)} if offset else {}),
                })
                records = [r for r in body.get("results", []) if r["id"] not in seen_at_boundary]
                for record in records:
                    modified = self._modified_ms(obj, record)
                    if modified > last_ms:
                        last_ms, seen_at_boundary = modified, set()
                    seen_at_boundary.add(record["id"])
                    seen_any = True
                # No record yet: no cursor (the caller keeps its own), so an empty window does not move it.
                yield Page(records, str(last_ms) if seen_any else None)
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
