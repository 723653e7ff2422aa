from netsuite.services import ServicePlugin

netsuite_smtpgate = ServicePlugin(
    "smtpgate", "netsuite.smtpgate.tap",
    "netsuite SMTP gate: outbound SMTP opens towards the mail server after a real mail login",
    rank=50)
