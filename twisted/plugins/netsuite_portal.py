from netsuite.services import ServicePlugin

netsuite_portal = ServicePlugin(
    "portal", "netsuite.portal.tap",
    "netsuite captive portal: redirect, click-through login, sessions, RFC 8908 API",
    rank=30)
