from twisted.application.service import ServiceMaker

netsuite_portal = ServiceMaker(
    "netsuite-portal", "netsuite.portal.tap",
    "netsuite captive portal: redirect, click-through login, sessions, RFC 8908 API",
    "netsuite-portal")
