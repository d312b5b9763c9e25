"""Deployment of healthscore: the compose stack's description and its native equivalent (not the product package)."""
