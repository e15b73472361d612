/* tests/integration/db-stmt-main.c - mg-db-stmt-test: our prepared statements when the server forgets them */
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#include "config.h"
#include "db.h"
#include "ticket.h"

/*
 * Draws a ticket, makes the server session forget its prepared statements
 * (as a connection pooler does when it hands us another server
 * connection), draws another, and prints both.  Exit status 0 only when
 * both were drawn.
 */
int main(int argc, char **argv)
{
	struct mg_config cfg = { 0 };
	struct mg_err err = { 0 };
	char first[MG_TICKET_LEN + 1] = "", second[MG_TICKET_LEN + 1] = "";
	PGconn *conn = NULL;
	int status = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: mg-db-stmt-test CONFIG\n");
		return 2;
	}
	if (mg_config_load(&cfg, argv[1], &err) < 0 ||
	    mg_db_connect(&cfg, "mg-db-stmt-test", &conn, &err) < 0 ||
	    mg_db_new_ticket(conn, first, &err) < 0)
		goto out;
	PQclear(PQexec(conn, "DEALLOCATE ALL"));
	if (mg_db_new_ticket(conn, second, &err) < 0)
		goto out;
	printf("%s %s\n", first, second);
	status = 0;
out:
	if (status != 0)
		fprintf(stderr, "mg-db-stmt-test: %s\n", err.msg);
	PQfinish(conn);
	mg_config_release(&cfg);
	return status;
}
