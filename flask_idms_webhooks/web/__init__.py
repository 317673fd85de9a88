"""The HTTP face: routes, body parsing, credentials on requests, answers and the OpenAPI
document. flask-smorest lives here only."""
