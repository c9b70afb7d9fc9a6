"""
E-mail that is not lost: the relay a partnership runs, and a durable outbox in front of it.

Workers never talk to the relay while handling a record: they put each message
in their outbox (`outbox.MailOutbox`, SQLite beside their other state) and a
sender (`sender.OutboxSender`) delivers what is due, retrying with growing
delays while the relay is away. So a relay outage delays a notice, it does not
drop one, and it never holds up the bus.
"""
