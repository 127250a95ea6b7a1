"""Response models of the HTTP API, one module per resource.

Each model describes exactly the JSON a route sends: field order, names, and which fields may
be null. A field that some answers leave out (absent, not null) is declared with
`exclude_if` so that None leaves it out.
Models forbid extra fields: a service that grows a key fails the tests instead of the key
silently vanishing from the answer."""
