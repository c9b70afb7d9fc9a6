"""The non-school recipients' referral work queues: store, delivering worker, receipts."""
