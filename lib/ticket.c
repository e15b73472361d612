/* lib/ticket.c - placeholder, being written */
