/* lib/db.c - placeholder, being written */
