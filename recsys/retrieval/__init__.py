"""Candidate sources (semantic, co-visitation, popularity, collaborative) and their blend."""
