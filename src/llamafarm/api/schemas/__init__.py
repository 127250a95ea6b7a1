"""Response models of the HTTP API, one module per resource.

Each model describes exactly the JSON a route sends: field order, names, and which fields may
be null. A field that some answers leave out (not null, absent) has a default and its route
sets `response_model_exclude_unset=True`, so it stays absent when the service did not set it.
Models forbid extra fields: a service that grows a key fails the tests instead of the key
silently vanishing from the answer."""
