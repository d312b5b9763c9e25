"""The vendor sandbox: HubSpot, Zendesk, Stripe and Mixpanel wire protocols over a synthetic portfolio.

A separate program beside the product package. The pipeline reaches it only over HTTP; the product
imports it only in the CLI's ``sandbox`` commands and the demo.
"""
