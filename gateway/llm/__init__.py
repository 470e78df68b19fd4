"""The model proxy's logic: which provider serves a model name, and how to reach it."""
