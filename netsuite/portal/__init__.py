"""The captive portal: sessions, web pages, mailboxes."""
