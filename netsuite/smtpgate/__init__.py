"""
netsuite's SMTP gate: outbound SMTP opens for a client only after a real
mail login seen by the mail proxy (docs/smtpgate.md).
"""
