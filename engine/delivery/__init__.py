"""A POP's delivery policy, as plain classes: no threads, no I/O, no actor messages.

The POP actor (``actors/pop.py``) receives messages, commits and sends; what it decides is here, each rule
in one place so it can be read and tested on its own:

``attempt``    :class:`~engine.delivery.attempt.Delivery` - one message's attempts and the answer to each
               part: the state machine that says when an attempt is complete, abandoned, withdrawn, settled
               or final, and whether the message is billed or refunded.
``retry``      :class:`~engine.delivery.retry.RetryPolicy` - which answers use up ``max_attempts``, when to
               give up, and the backoff with full jitter.
``carriers``   :class:`~engine.delivery.carriers.CarrierBoard` - each carrier's availability, cool-down
               after throttling, window of outstanding attempts and measured pace.
``admission``  :class:`~engine.delivery.admission.Admission` - refusing at the door what the carriers
               cannot take within ``admission_horizon_seconds``.
``timers``     :class:`~engine.delivery.timers.Timers` - response deadlines and validity deadlines.
"""
