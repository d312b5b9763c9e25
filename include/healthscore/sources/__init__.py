"""Sources: one module per vendor behind one small interface (see ``base.Source``)."""

from __future__ import annotations

from healthscore.sources.base import Page, Source, SourceConnection, SourceObject
from healthscore.sources.hubspot import HubSpotSource
from healthscore.sources.mixpanel import MixpanelSource
from healthscore.sources.stripe import StripeSource
from healthscore.sources.zendesk import ZendeskSource

SOURCES: dict[str, type[Source]] = {s.name: s for s in (HubSpotSource, ZendeskSource, StripeSource, MixpanelSource)}

__all__ = ["SOURCES", "HubSpotSource", "MixpanelSource", "Page", "Source", "SourceConnection", "SourceObject",
           "StripeSource", "ZendeskSource"]
