/* lib/smtp.c - placeholder, being written */
