"""Group payment (patent FIG. 7, claims 22-23): one collector pays a bill at the counter
and every other member pays their own share from their own funding source.

:mod:`nfcpay.group.split` holds the arithmetic (pure functions, integer minor units);
:mod:`nfcpay.group.bill` the collector's bill as kept in its home directory;
:mod:`nfcpay.group.flows` the NFC conversations (collect, join) and paying a bill.
"""
