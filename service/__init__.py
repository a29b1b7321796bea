"""callbackhub's HTTP API, and what the API and the dispatcher share (settings, database)."""
