"""Hydra configuration: config.yaml and its groups. Shipped as the package hgpo.conf."""
