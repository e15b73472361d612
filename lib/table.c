/* lib/table.c - placeholder, being written */
