/* lib/config-load.c - placeholder, being written */
