/* lib/template.c - placeholder, being written */
