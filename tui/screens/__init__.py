"""Dialogs and full screens of the app: one module per screen."""
