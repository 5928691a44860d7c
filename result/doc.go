// Package result holds task results as Celery clients see them:
// AsyncResult, ResultSet and GroupResult, the Backend interface that stores
// them, and the deadlock guard that stops a task from waiting on results.
package result
