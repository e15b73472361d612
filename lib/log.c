/* lib/log.c - placeholder, being written */
