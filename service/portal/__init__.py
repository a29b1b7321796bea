"""The partner portal: server-rendered pages where a partner sees, tests and repairs its
callbacks, on the same domain functions as the API."""
