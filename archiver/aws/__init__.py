"""AWS as every command calls it: clients, error table, retries and waits, Scan, describe, prices"""
