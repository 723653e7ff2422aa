from twisted.application.service import ServiceMaker

netsuite = ServiceMaker(
    "netsuite", "netsuite.tap",
    "netsuite: the hook bus and every service the config enables, in one process",
    "netsuite")
