/* lib/mailer.c - placeholder, being written */
