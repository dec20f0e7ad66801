import sys


class Account:
    def __init__(self, owner):
        self.owner = owner
        self.balance = 0

    def deposit(self, amount):
        self.balance = self.balance + amount
        return self.balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.balance = self.balance - amount
        return self.balance


def transfer(source, target, amount):
    source.withdraw(amount)
    return target.deposit(amount)


def safe_transfer(source, target, amount):
    try:
        return transfer(source, target, amount)
    except ValueError:
        return None


def main(amounts):
    alice = Account("alice")
    bob = Account("bob")
    alice.deposit(100)
    for amount in amounts:
        safe_transfer(alice, bob, amount)
    print(alice.balance, bob.balance)


main([int(a) for a in sys.argv[1:]])
