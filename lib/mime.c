/* lib/mime.c - placeholder, being written */
