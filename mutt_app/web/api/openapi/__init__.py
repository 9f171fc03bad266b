"""The OpenAPI 3.1 description of the REST API, served at ``GET /api/v2/openapi.json`` (and v1).

Written here by hand, operation by operation, with the body schemas built from the same
:class:`~mutt_app.commands.fields.FieldSpec` objects the API validates with (``RULE_FIELDS``,
``DEV_HOST_FIELDS``, ``TEAM_FIELDS``, ``CONFIG_FIELDS`` from the dynamic configuration's ``KEYS``):
type, nullability, length, range and allowed values come from one place, so a bound added to a
FieldSpec is checked and documented at once. Each operation's role is read from its view. Tests keep
the rest honest: the document is validated with openapi-spec-validator, its paths and methods must
be exactly the routes the app registers, the role matrix test checks every success answer against
the documented response schema, and schemathesis (tests/integration/test_api_fuzz.py) sends
generated requests to the app under gunicorn and checks every answer against this description.

The description needs no key: it tells nothing a client with a key could not try.

A module per resource describes its operations and schemas (``operations()``, ``schemas()``):
:mod:`.rules`, :mod:`.drafts` (rule drafts and the backtest), :mod:`.hosts` (development hosts and
teams), :mod:`.heartbeats`, :mod:`.windows`, :mod:`.operations` (dead letters, deliveries, dynamic
configuration), :mod:`.audit`, :mod:`.events` (one event's story), :mod:`.unhandled`, :mod:`.slo` and :mod:`.dashboard`, all built of
the pieces in :mod:`.schema`; :mod:`.document` assembles them and serves the document.
"""
