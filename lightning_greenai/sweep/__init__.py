"""The sweep engine: the batch loop, its books, stop rules, settling, resume and interrupts."""
