"""Stripe objects and events as Stripe sends them, at one current API version."""
