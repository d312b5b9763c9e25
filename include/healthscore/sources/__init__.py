"""Sources: one module per vendor behind one small interface (``base.Source``), declared in ``registry``.

Names resolve lazily (PEP 562): ``healthscore.sources.registry`` is imported by DAG files at parse time and
must not pull requests, tenacity or the vendor modules with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from healthscore.sources import registry

_EXPORTS: dict[str, str] = {
    "Page": "base",
    "Source": "base",
    "SourceConnection": "base",
    "SourceObject": "base",
    "HubSpotSource": "hubspot",
    "MixpanelSource": "mixpanel",
    "StripeSource": "stripe",
    "ZendeskSource": "zendesk",
}

__all__ = ["HubSpotSource", "MixpanelSource", "Page", "Source", "SourceConnection", "SourceObject",
           "StripeSource", "ZendeskSource", "client_class"]

if TYPE_CHECKING:
    from healthscore.sources.base import Page, Source, SourceConnection, SourceObject
    from healthscore.sources.hubspot import HubSpotSource
    from healthscore.sources.mixpanel import MixpanelSource
    from healthscore.sources.stripe import StripeSource
    from healthscore.sources.zendesk import ZendeskSource


def client_class(name: str) -> type[Source]:
    """The client class of a registered source (its module is imported now)."""
    return registry.source(name).client_class()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
