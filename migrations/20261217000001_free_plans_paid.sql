-- A free plan's sale is paid and active at once (issue 16). Sales of free plans made before
-- that have a 0.00 invoice left open and an inactive subscription that no payment can
-- activate (a payment is at least a kopeck): settle them the same way.
with settled as (
    update invoices set status = 'paid', paid_at = now()
    where amount = 0 and status = 'open'
    returning subscription_id
)
update subscriptions s set status = 'active', updated_at = now()
from settled
where s.id = settled.subscription_id and s.status = 'inactive';
